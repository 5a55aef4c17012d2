variable "account_id" {
  description = "Cloudflare account id (32 hex characters)."
  type        = string
}

variable "zone_id" {
  description = "Id of the zone holding gateway_hostname and the route hosts."
  type        = string
}

variable "environment" {
  description = "staging or production: which wrangler.toml environment (and so which Worker, ai-gateway-<environment>) this state serves. Keep one state per environment (a workspace or a backend key each)."
  type        = string

  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment must be staging or production (the environments of wrangler.toml)."
  }
}

variable "gateway_hostname" {
  description = "Hostname of the gateway itself (paths /{route}/… and /_gateway/…)."
  type        = string
}

variable "model_hostname" {
  description = "Hostname of the host route llama-prod (every path on it goes to the route)."
  type        = string
}

variable "vllm_hosts" {
  description = "Private addresses of the two vLLM servers behind this environment's tunnel."
  type        = list(string)
  default     = ["10.0.1.5", "10.0.1.6"]

  validation {
    condition     = length(var.vllm_hosts) == 2
    error_message = "The example pool has two hosts."
  }
}

variable "worker_deployed" {
  description = "false for the first apply (creates the KV namespace wrangler.toml needs); true once scripts/deploy-edge.sh has deployed the Worker (attaches the domains)."
  type        = bool
  default     = false
}
