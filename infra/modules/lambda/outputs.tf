output "function_url" {
  description = "The gateway's public base URL (Function URL, response streaming); GATEWAY_URL for gatewayctl and the contract suite."
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
