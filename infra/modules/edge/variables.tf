variable "account_id" {
  description = "Cloudflare account id that runs the Worker."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{32}$", var.account_id))
    error_message = "account_id must be the 32-character hex Cloudflare account id."
  }
}

variable "worker_name" {
  description = "Name of the Worker script as deployed: wrangler names an environment's Worker `<name>-<env>`, so \"ai-gateway-staging\" or \"ai-gateway-production\" for `wrangler deploy --env staging|production` (\"ai-gateway\" for the top level). wrangler deploy creates the script; Terraform only attaches to it."
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
  description = "Set to true once `wrangler deploy` (scripts/deploy-edge.sh) has created the Worker: custom domains and routes attach to an existing script, so the first apply (which creates the KV namespace whose id wrangler.toml needs) leaves them out."
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
