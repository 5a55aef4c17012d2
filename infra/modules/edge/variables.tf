variable "account_id" {
  description = "Cloudflare account id that runs the Worker."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{32}$", var.account_id))
    error_message = "account_id must be the 32-character hex Cloudflare account id."
  }
}

variable "worker_name" {
  description = "Name of the Worker script: `name` in wrangler.toml (\"ai-gateway\"). wrangler deploy creates the script; Terraform only attaches to it."
  type        = string
  default     = "ai-gateway"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,62}$", var.worker_name))
    error_message = "worker_name must be a Worker script name (lowercase letters, digits, `-`)."
  }
}

variable "kv_namespace_title" {
  description = "Title of the Workers KV namespace the Worker binds as GATEWAY_KV."
  type        = string
  default     = "ai-gateway"
}

variable "worker_deployed" {
  description = "Set to true once `wrangler deploy` has created the Worker: custom domains, routes and secrets attach to an existing script, so the first apply (which creates the KV namespace whose id wrangler.toml needs) leaves them out."
  type        = bool
  default     = false
}

variable "zone_id" {
  description = "Zone of custom_domains and route_patterns. Required when either is non-empty."
  type        = string
  default     = null
}

variable "custom_domains" {
  description = "Hostnames served by the Worker as Workers custom domains (DNS record and certificate managed by Cloudflare): the gateway's own host and every route `host`."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for h in var.custom_domains : can(regex("^[a-z0-9-]+(\\.[a-z0-9-]+)+$", h))])
    error_message = "custom_domains must be lowercase hostnames."
  }
}

variable "route_patterns" {
  description = "Workers route patterns (e.g. \"gateway.example.com/*\") for hostnames whose DNS you manage yourself; prefer custom_domains."
  type        = list(string)
  default     = []
}

variable "signing_keys" {
  description = "GATEWAY_SIGNING_KEYS, the JSON array printed by `gatewayctl key generate`, put as a Worker secret. Null leaves the secret to `wrangler secret put`."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.signing_keys == null ? true : can(regex("^\\s*\\[", var.signing_keys))
    error_message = "signing_keys must be the JSON array printed by `gatewayctl key generate`."
  }
}

variable "upstream_api_keys" {
  description = "Upstream API key values by secret name, e.g. { VLLM_API_KEY = \"…\" }, each put as a Worker secret that routes name in upstream_api_key_secret. Sensitive; never put these in routes."
  type        = map(string)
  default     = {}
  sensitive   = true

  validation {
    condition     = alltrue([for k in keys(var.upstream_api_keys) : can(regex("^[A-Z0-9_]{1,128}$", k)) && !startswith(k, "GATEWAY_")])
    error_message = "upstream_api_keys names must match ^[A-Z0-9_]{1,128}$ and may not start with GATEWAY_."
  }
}

variable "wrangler_command" {
  description = "How to run wrangler to put and delete Worker secrets (the Cloudflare provider v5 has no Worker secret resource for scripts it does not own). Runs with CLOUDFLARE_API_TOKEN from the environment."
  type        = string
  default     = "npx --no-install wrangler"
}

variable "wrangler_working_dir" {
  description = "Directory in which wrangler_command runs (the repository root, where node_modules holds wrangler). Null: Terraform's working directory."
  type        = string
  default     = null
}

variable "vllm_pools" {
  description = "Private vLLM pools reached through Cloudflare Tunnel + Workers VPC: one tunnel per pool (run cloudflared with its token inside the pool's network) and one VPC service per host, keyed by the binding name that wrangler.toml binds and route endpoints name in `via`."
  type = map(object({
    services = map(object({
      # Exactly one of ipv4 or hostname.
      ipv4         = optional(string)
      hostname     = optional(string)
      resolver_ips = optional(list(string))
      http_port    = optional(number, 8000)
      https_port   = optional(number)
    }))
  }))
  default = {}

  validation {
    condition     = alltrue([for p, pool in var.vllm_pools : can(regex("^[a-z0-9][a-z0-9-]{0,40}$", p))])
    error_message = "Pool names must be lowercase letters, digits and `-` (they name tunnels)."
  }

  validation {
    condition     = alltrue([for pool in var.vllm_pools : alltrue([for b, s in pool.services : can(regex("^[A-Za-z0-9_]{1,64}$", b)) && ((s.ipv4 == null) != (s.hostname == null))])])
    error_message = "Each service is keyed by a binding name ([A-Za-z0-9_]{1,64}) and sets exactly one of ipv4 or hostname."
  }

  validation {
    condition     = length(flatten([for pool in var.vllm_pools : keys(pool.services)])) == length(distinct(flatten([for pool in var.vllm_pools : keys(pool.services)])))
    error_message = "Binding names must be unique across pools."
  }
}
