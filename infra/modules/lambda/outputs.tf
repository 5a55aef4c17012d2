output "function_url" {
  description = "The Function URL (response streaming). Without a front door it is the gateway's base URL (GATEWAY_URL); behind one, requests to it are refused (403 without the origin secret, or by IAM with oac)."
  value       = aws_lambda_function_url.this.function_url
}

output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "table_name" {
  description = "Name of the DynamoDB table (GATEWAY_TABLE); pass it to modules/routes/lambda."
  value       = aws_dynamodb_table.this.name
}

output "table_arn" {
  description = "ARN of the DynamoDB table."
  value       = aws_dynamodb_table.this.arn
}

output "role_arn" {
  description = "ARN of the function's IAM role."
  value       = aws_iam_role.this.arn
}

output "security_group_id" {
  description = "Security group of the function's network interfaces (null outside a VPC); allow it inbound on the vLLM hosts' port."
  value       = local.in_vpc ? aws_security_group.this[0].id : null
}

output "log_group_name" {
  description = "CloudWatch log group of the function (one JSON line and one EMF metrics line per request)."
  value       = aws_cloudwatch_log_group.this.name
}

output "probe_function_name" {
  description = "Name of the health prober function (`aws lambda invoke --function-name <it> out.json` runs a round now)."
  value       = aws_lambda_function.probe.function_name
}

output "probe_log_group_name" {
  description = "CloudWatch log group of the health prober."
  value       = aws_cloudwatch_log_group.probe.name
}

output "secret_arn" {
  description = "ARN of the gateway's Secrets Manager secret (GATEWAY_SECRETS_ARN): one JSON object of signing keys, upstream keys, origin secret and upstream TLS material."
  value       = local.secret_arn
}

output "probe_secret_arn" {
  description = "ARN of the prober's secret (upstream TLS material only); null when the prober needs none."
  value       = local.probe_secret_arn
}

output "gateway_url" {
  description = "The gateway's public base URL: https://<first front door domain>/ with a front door, else the Function URL."
  value       = local.front_door ? "https://${var.front_door.domain_names[0]}/" : aws_lambda_function_url.this.function_url
}

output "front_door_domain_name" {
  description = "CloudFront's own domain name (<id>.cloudfront.net) for CNAMEs in DNS not managed by Route 53; null without a front door."
  value       = local.front_door ? aws_cloudfront_distribution.this[0].domain_name : null
}

output "distribution_id" {
  description = "CloudFront distribution id (for invalidations, logs, WAF association); null without a front door."
  value       = local.front_door ? aws_cloudfront_distribution.this[0].id : null
}

output "origin_secret" {
  description = "The front door's origin secret (GATEWAY_ORIGIN_SECRET), for secrets kept outside Terraform (secrets_arn). Sensitive; null without a front door."
  value       = local.origin_secret
  sensitive   = true
}

output "probe_role_arn" {
  description = "ARN of the prober's IAM role (its own, so it never holds the gateway's secret)."
  value       = aws_iam_role.probe.arn
}
