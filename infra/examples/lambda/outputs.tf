output "gateway_url" {
  description = "Base URL of the gateway (GATEWAY_URL for gatewayctl)."
  value       = module.lambda.function_url
}

output "security_group_id" {
  description = "Allow this security group inbound on port 8000 on the vLLM hosts."
  value       = module.lambda.security_group_id
}

output "route_keys" {
  description = "DynamoDB partition keys written for the static routes."
  value       = module.routes.keys
}

output "probe_function_name" {
  description = "The health prober (runs every minute; `aws lambda invoke --function-name <it> out.json` runs a round now)."
  value       = module.lambda.probe_function_name
}
