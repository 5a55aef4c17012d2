# A complete edge deployment of one environment (staging or production): KV namespace, custom
# domains, a tunnel and two Workers VPC services into a private vLLM pool, and one static route
# over that pool. Secrets are not here: scripts/deploy-edge.sh puts them with wrangler.

locals {
  # One private pool of two vLLM hosts behind one Cloudflare Tunnel; each host is a VPC service
  # whose binding name the route's endpoints give in `via` (and wrangler.toml binds).
  vllm_pools = {
    llama = {
      services = {
        VLLM_LLAMA_A = { ipv4 = var.vllm_hosts[0], http_port = 8000 }
        VLLM_LLAMA_B = { ipv4 = var.vllm_hosts[1], http_port = 8000 }
      }
    }
  }

  # Route objects, not JSON strings: a plan then shows a changed field as that field.
  routes = {
    "llama-prod" = {
      # Every path on this host goes to the route, unprefixed; /llama-prod/… works on the gateway host.
      host = var.model_hostname
      endpoints = [
        # The URL gives the path and Host header; the VPC service decides where it goes.
        { id = "gpu-a", url = "http://${var.vllm_hosts[0]}:8000", weight = 2, via = "VLLM_LLAMA_A" },
        { id = "gpu-b", url = "http://${var.vllm_hosts[1]}:8000", weight = 1, via = "VLLM_LLAMA_B" },
      ]
      # The internal team and one partner (partner tokens name the route in `routes`).
      auth = { required = true, groups = ["ml-team", "partner-acme"] }
      # Clients send a session id so a conversation stays on one vLLM instance (prefix cache).
      affinity                = { header = "x-session-id" }
      upstream_api_key_secret = "VLLM_API_KEY"
      timeouts                = { connect_ms = 2000, response_ms = 300000, idle_ms = 120000 }
      max_body_bytes          = 10485760
      # Each token may send 600 requests a minute here unless it carries its own limit.
      rate_limit_rpm = 600
    }
  }
}

module "edge" {
  source = "../../modules/edge"

  account_id = var.account_id
  # wrangler deploys [env.<environment>] as the Worker ai-gateway-<environment>.
  worker_name        = "ai-gateway-${var.environment}"
  kv_namespace_title = "ai-gateway-${var.environment}"
  worker_deployed    = var.worker_deployed
  zone_id            = var.zone_id
  custom_domains     = [var.gateway_hostname, var.model_hostname]
  vllm_pools         = local.vllm_pools
}

module "routes" {
  source = "../../modules/routes/edge"

  account_id   = var.account_id
  namespace_id = module.edge.kv_namespace_id
  routes       = local.routes
}
