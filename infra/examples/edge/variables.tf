variable "account_id" {
  description = "Cloudflare account id (32 hex characters)."
  type        = string
}

variable "zone_id" {
  description = "Id of the zone holding gateway_hostname and the route hosts."
  type        = string
}

variable "gateway_hostname" {
  description = "Hostname of the gateway itself (paths /{route}/… and /_gateway/…)."
  type        = string
  default     = "gateway.example.com"
}

variable "worker_deployed" {
  description = "false for the first apply (creates the KV namespace wrangler.toml needs); true after `wrangler deploy` (attaches domains and puts secrets)."
  type        = bool
  default     = false
}

variable "signing_keys" {
  description = "GATEWAY_SIGNING_KEYS, the output of `gatewayctl key generate` (pass as TF_VAR_signing_keys, never in a .tfvars file under version control)."
  type        = string
  sensitive   = true
}

variable "vllm_api_key" {
  description = "The `--api-key` the vLLM servers were started with; the Worker sends it upstream as VLLM_API_KEY."
  type        = string
  sensitive   = true
}
