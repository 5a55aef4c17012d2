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
