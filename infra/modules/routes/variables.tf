# The route object of ../../../shared/API.md, keyed by route name. Every rule below mirrors
# gateway-core's Route::validate (core/src/route.rs) so that `terraform plan` refuses what the
# gateway would refuse; infra/check/tests/hcl.rs evaluates these conditions against the core.
#
# Conditions guard nullable attributes with `? :` rather than `||`: Terraform evaluates both
# operands of `||`, so `x == null || length(x) > 0` fails on null.

variable "routes" {
  description = "Static routes, keyed by route name, each exactly the route object of API.md without `name` (the key is the name) and without `managed_by` (set to \"terraform\" by this module). Upstream API keys never go here: `upstream_api_key_secret` names a platform secret (a Worker secret put by scripts/deploy-edge.sh, or a key of the Lambda's Secrets Manager secret)."
  type = map(object({
    # Optional; when set it must equal the map key.
    name    = optional(string)
    host    = optional(string)
    enabled = optional(bool, true)
    endpoints = optional(list(object({
      id     = string
      url    = string
      weight = optional(number, 1)
      # At the edge: the Workers VPC service binding to fetch through. The Lambda ignores it.
      via = optional(string)
    })), [])
    auth = optional(object({
      required = optional(bool, true)
      groups   = optional(list(string), [])
    }), {})
    affinity = optional(object({
      header = optional(string, "x-session-id")
      cookie = optional(string)
      # Requests without a session key: "token", "none" (spread by load) or "prefix" (by the
      # prompt's start); null: token for user tokens, none for service and partner tokens.
      fallback = optional(string)
      # Bounded-load factor (1 to 10; 0 turns bounding off); null: 1.25.
      balance_factor = optional(number)
    }), {})
    upstream_api_key_secret = optional(string)
    timeouts = optional(object({
      connect_ms  = optional(number, 2000)
      response_ms = optional(number, 300000)
      idle_ms     = optional(number, 120000)
    }), {})
    max_body_bytes = optional(number, 10485760)
    # Default requests per minute for each token on this route; a token's own limit wins.
    rate_limit_rpm = optional(number)
    # Proxied responses carry `Content-Security-Policy: sandbox` unless false (a real web app).
    sandbox = optional(bool, true)
    # Upstream `Set-Cookie` passes only when true.
    forward_set_cookie = optional(bool, false)
    # Model names clients use under /v1/ (model routing): vLLM's served names and aliases;
    # at most 32, each served by one route only.
    models = optional(list(string), [])
    # "always": the gateway asks vLLM for usage on every stream (and hides it from clients
    # that did not ask), so per-token usage is complete; null or "client": only when asked.
    usage = optional(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for name, r in var.routes : can(regex("^[a-z0-9][a-z0-9-]{0,62}$", name)) && name != "e" && name != "v1"])
    error_message = "Route names must match ^[a-z0-9][a-z0-9-]{0,62}$; `e`, `v1` (model routing) and names starting with `_` are reserved."
  }

  validation {
    condition     = alltrue([for name, r in var.routes : r.name == null ? true : r.name == name])
    error_message = "A route's `name`, when given, must equal its key in the routes map."
  }

  validation {
    condition     = alltrue([for r in var.routes : r.host == null ? true : (length(r.host) <= 253 && can(regex("^[a-z0-9-]+(\\.[a-z0-9-]+)*$", r.host)))])
    error_message = "A route's host must be a lowercase DNS name (letters, digits, `-`, dots between labels; at most 253 characters)."
  }

  validation {
    condition     = length(distinct([for r in var.routes : r.host if r.host != null])) == length([for r in var.routes : r.host if r.host != null])
    error_message = "Two routes cannot claim the same host."
  }

  validation {
    condition     = alltrue([for r in var.routes : length(r.endpoints) <= 256])
    error_message = "A route has at most 256 endpoints."
  }

  validation {
    condition     = alltrue([for r in var.routes : alltrue([for e in r.endpoints : can(regex("^[A-Za-z0-9._-]{1,64}$", e.id))])])
    error_message = "Endpoint ids must match ^[A-Za-z0-9._-]{1,64}$."
  }

  validation {
    condition     = alltrue([for r in var.routes : length(distinct([for e in r.endpoints : e.id])) == length(r.endpoints)])
    error_message = "Endpoint ids must be unique within a route."
  }

  validation {
    condition     = alltrue([for r in var.routes : alltrue([for e in r.endpoints : length(e.url) <= 2048 && can(regex("^https?://([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\])(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$", e.url))])])
    error_message = "Endpoint urls must be http:// or https:// with a host, an optional port and path, and no credentials, query or fragment (keys go in upstream_api_key_secret)."
  }

  validation {
    condition     = alltrue([for r in var.routes : alltrue([for e in r.endpoints : e.weight >= 1 && e.weight <= 1000 && floor(e.weight) == e.weight])])
    error_message = "Endpoint weights must be whole numbers from 1 to 1000."
  }

  validation {
    condition     = alltrue([for r in var.routes : alltrue([for e in r.endpoints : e.via == null ? true : can(regex("^[A-Za-z0-9_]{1,64}$", e.via))])])
    error_message = "An endpoint's `via` must be a binding name ([A-Za-z0-9_]{1,64})."
  }

  validation {
    condition     = alltrue([for r in var.routes : alltrue([for g in r.auth.groups : can(regex("^[A-Za-z0-9._:-]{1,64}$", g))])])
    error_message = "Groups must match ^[A-Za-z0-9._:-]{1,64}$."
  }

  validation {
    condition     = alltrue([for r in var.routes : r.affinity.header == null ? true : can(regex("^[A-Za-z0-9!#$%&'*+.^_|~-]{1,64}$", r.affinity.header))])
    error_message = "The affinity header must be a valid HTTP header name of at most 64 characters."
  }

  validation {
    condition     = alltrue([for r in var.routes : r.affinity.cookie == null ? true : can(regex("^[A-Za-z0-9._-]{1,64}$", r.affinity.cookie))])
    error_message = "The affinity cookie must be a cookie name ([A-Za-z0-9._-]{1,64})."
  }

  validation {
    condition     = alltrue([for r in var.routes : r.affinity.fallback == null ? true : contains(["token", "none", "prefix"], r.affinity.fallback)])
    error_message = "affinity.fallback must be token, none or prefix."
  }

  validation {
    condition     = alltrue([for r in var.routes : r.affinity.balance_factor == null ? true : (r.affinity.balance_factor == 0 || (r.affinity.balance_factor >= 1 && r.affinity.balance_factor <= 10))])
    error_message = "affinity.balance_factor must be 0 (no bound) or between 1 and 10."
  }

  validation {
    condition     = alltrue([for r in var.routes : r.upstream_api_key_secret == null ? true : (can(regex("^[A-Z0-9_]{1,128}$", r.upstream_api_key_secret)) && !startswith(r.upstream_api_key_secret, "GATEWAY_") && !startswith(r.upstream_api_key_secret, "AWS_") && !startswith(r.upstream_api_key_secret, "LAMBDA_") && !startswith(r.upstream_api_key_secret, "CLOUDFLARE_") && !startswith(r.upstream_api_key_secret, "_"))])
    error_message = "upstream_api_key_secret must NAME a secret ([A-Z0-9_]{1,128}, not a GATEWAY_*, AWS_*, LAMBDA_*, CLOUDFLARE_* or _* variable, which are the gateway's or the platform's own), never hold its value."
  }

  validation {
    # A heuristic net for keys pasted where a name or URL belongs: OpenAI/Anthropic-style
    # `sk-…`, Hugging Face `hf_…`, GitHub `gh?_…`, AWS access key ids, JWTs.
    condition     = alltrue([for r in var.routes : !can(regex("\\b(sk-(proj-|ant-)?[A-Za-z0-9_]{20,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16}|eyJ[A-Za-z0-9_-]{10,}\\.[A-Za-z0-9_-]+)", jsonencode(r)))])
    error_message = "A route holds something that looks like an API key or token. Put the key in a sensitive secret variable and name it in upstream_api_key_secret."
  }

  validation {
    condition     = alltrue([for r in var.routes : r.timeouts.connect_ms >= 1 && r.timeouts.connect_ms <= 60000 && r.timeouts.response_ms >= 1 && r.timeouts.response_ms <= 3600000])
    error_message = "timeouts.connect_ms must be 1..60000 and timeouts.response_ms 1..3600000."
  }

  validation {
    condition     = alltrue([for r in var.routes : r.timeouts.idle_ms >= 1000 && r.timeouts.idle_ms <= 3600000])
    error_message = "timeouts.idle_ms must be 1000..3600000."
  }

  validation {
    condition     = alltrue([for r in var.routes : r.rate_limit_rpm == null ? true : (r.rate_limit_rpm >= 1 && r.rate_limit_rpm <= 1000000 && floor(r.rate_limit_rpm) == r.rate_limit_rpm)])
    error_message = "rate_limit_rpm must be a whole number from 1 to 1000000."
  }

  validation {
    condition     = alltrue([for r in var.routes : length(r.models) <= 32 && alltrue([for m in r.models : can(regex("^[!-~]{1,256}$", m))])])
    error_message = "A route serves at most 32 models, each named by 1 to 256 visible ASCII characters."
  }

  validation {
    condition     = alltrue([for r in var.routes : r.usage == null ? true : contains(["client", "always"], r.usage)])
    error_message = "usage must be client or always."
  }

  validation {
    condition     = length(flatten([for r in var.routes : r.models])) == length(distinct(flatten([for r in var.routes : r.models])))
    error_message = "A model name is served by one route only (and listed once)."
  }

  validation {
    condition     = alltrue([for r in var.routes : r.max_body_bytes >= 1 && r.max_body_bytes <= 1073741824 && floor(r.max_body_bytes) == r.max_body_bytes])
    error_message = "max_body_bytes must be a whole number from 1 to 1073741824 (1 GiB)."
  }
}

variable "budgets" {
  description = "Token budgets (compute governance), keyed `tokens/{token id}`, `service-accounts/{subject}` or `contracts/{contract_id}`, each with any of tokens_per_minute, tokens_per_day, tokens_per_month (UTC windows). Written with managed_by = \"terraform\", so the admin API refuses to change them (409). See the root README, \"Token budgets\"."
  type = map(object({
    tokens_per_minute = optional(number)
    tokens_per_day    = optional(number)
    tokens_per_month  = optional(number)
  }))
  default = {}

  validation {
    condition     = alltrue([for k, b in var.budgets : can(regex("^(tokens|service-accounts|contracts)/[!-.0-~]{1,128}$", k))])
    error_message = "Budget keys are tokens/{id}, service-accounts/{subject} or contracts/{contract_id}; the id is 1 to 128 visible characters without /."
  }

  validation {
    condition     = alltrue([for b in var.budgets : b.tokens_per_minute != null || b.tokens_per_day != null || b.tokens_per_month != null])
    error_message = "A budget sets tokens_per_minute, tokens_per_day or tokens_per_month."
  }

  validation {
    condition     = alltrue([for b in var.budgets : alltrue([for v in [b.tokens_per_minute, b.tokens_per_day, b.tokens_per_month] : v == null ? true : (v >= 1 && v <= 1000000000000 && floor(v) == v)])])
    error_message = "Budget limits are whole numbers from 1 to 10^12 tokens."
  }
}
