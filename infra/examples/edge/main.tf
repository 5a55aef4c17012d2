# A complete edge deployment: KV namespace, custom domains, secrets, a tunnel and two Workers VPC
# services into a private vLLM pool, and one static route over that pool.

locals {
  # One private pool of two vLLM hosts behind one Cloudflare Tunnel; each host is a VPC service
  # whose binding name the route's endpoints give in `via`.
  vllm_pools = {
    llama = {
      services = {
        VLLM_LLAMA_A = { ipv4 = "10.0.1.5", http_port = 8000 }
        VLLM_LLAMA_B = { ipv4 = "10.0.1.6", http_port = 8000 }
      }
    }
  }

  routes = {
    "llama-prod" = {
      # Every path on this host goes to the route, unprefixed; /llama-prod/… works on the gateway host.
      host = "llama.models.example.com"
      endpoints = [
        { id = "gpu-a", url = "http://10.0.1.5:8000", weight = 2, via = "VLLM_LLAMA_A" },
        { id = "gpu-b", url = "http://10.0.1.6:8000", weight = 1, via = "VLLM_LLAMA_B" },
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

  account_id           = var.account_id
  worker_name          = "ai-gateway"
  worker_deployed      = var.worker_deployed
  zone_id              = var.zone_id
  custom_domains       = [var.gateway_hostname, "llama.models.example.com"]
  signing_keys         = var.signing_keys
  upstream_api_keys    = { VLLM_API_KEY = var.vllm_api_key }
  wrangler_working_dir = "${path.root}/../../.."
  vllm_pools           = local.vllm_pools
}

module "routes" {
  source = "../../modules/routes/edge"

  account_id   = var.account_id
  namespace_id = module.edge.kv_namespace_id
  routes       = local.routes
}
