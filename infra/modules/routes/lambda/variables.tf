variable "table_name" {
  description = "Name of the gateway's DynamoDB table (output `table_name` of modules/lambda; the Lambda's GATEWAY_TABLE)."
  type        = string
}

variable "routes" {
  description = "Static routes keyed by name, as the `routes` variable of modules/routes (../variables.tf), which types and validates them."
  type        = any
  default     = {}
}

variable "budgets" {
  description = "Token budgets keyed `tokens/{id}`, `service-accounts/{subject}` or `contracts/{contract_id}`, as the `budgets` variable of modules/routes (../variables.tf), which types and validates them."
  type        = any
  default     = {}
}
