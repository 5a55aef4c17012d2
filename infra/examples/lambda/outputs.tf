output "gateway_url" {
  description = "Base URL of the gateway (GATEWAY_URL for gatewayctl): https://<domain_name>/ behind the front door, else the Function URL."
  value       = module.lambda.gateway_url
}

output "function_url" {
  description = "The Function URL (behind the front door it answers 403 to anything that does not come through CloudFront)."
  value       = module.lambda.function_url
}

output "secret_arn" {
  description = "The gateway's Secrets Manager secret (one JSON object)."
  value       = module.lambda.secret_arn
}

output "distribution_id" {
  description = "CloudFront distribution id, or null without a front door."
  value       = module.lambda.distribution_id
}

output "front_door_domain_name" {
  description = "<id>.cloudfront.net, or null without a front door."
  value       = module.lambda.front_door_domain_name
}

output "security_group_id" {
  description = "Allow this security group inbound on port 8000 on the vLLM hosts."
  value       = module.lambda.security_group_id
}

output "route_keys" {
  description = "DynamoDB partition keys written for the static routes."
  value       = module.routes.keys
}

output "routes" {
  description = "The route objects as stored (a plan shows their changes field by field)."
  value       = module.routes.routes
}

output "probe_function_name" {
  description = "The health prober (runs every minute; `aws lambda invoke --function-name <it> out.json` runs a round now)."
  value       = module.lambda.probe_function_name
}
