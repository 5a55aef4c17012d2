variable "account_id" {
  description = "Cloudflare account id that owns the Workers KV namespace."
  type        = string
}

variable "namespace_id" {
  description = "Id of the Workers KV namespace bound to the Worker as GATEWAY_KV (output `kv_namespace_id` of modules/edge)."
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
