# The Cloudflare side of the gateway, for one environment (staging or production: one state
# each). Ownership, so that `wrangler deploy`, the deploy pipeline and Terraform never fight:
#
#   wrangler deploy --env <env>             Terraform (this module)
#   (wrangler.toml [env.<env>])             - the Workers KV namespace (its id goes, once, into
#   - the Worker script and its build         wrangler.toml's [env.<env>] kv_namespaces)
#   - bindings: GATEWAY_KV, the Durable     - custom domains / Workers routes
#     Objects, vpc_services, mtls, vars     - tunnels and Workers VPC services for private vLLM pools
#   - Durable Object migrations             - static routes in KV (modules/routes/edge)
#
#   scripts/deploy-edge.sh <env>: Worker secrets with `wrangler secret bulk` (values from a JSON
#   file, never through Terraform: no state, no provisioner, no command line), then the deploy.

# ---- Workers KV ---------------------------------------------------------------------------------

resource "cloudflare_workers_kv_namespace" "this" {
  account_id = var.account_id
  title      = var.kv_namespace_title
}

# ---- how requests reach the Worker (after wrangler deploy created it) ---------------------------

resource "cloudflare_workers_custom_domain" "this" {
  for_each = var.worker_deployed ? toset(var.custom_domains) : toset([])

  account_id = var.account_id
  zone_id    = var.zone_id
  hostname   = each.value
  service    = var.worker_name
}

resource "cloudflare_workers_route" "this" {
  for_each = var.worker_deployed ? toset(var.route_patterns) : toset([])

  zone_id = var.zone_id
  pattern = each.value
  script  = var.worker_name
}

# ---- private vLLM pools: Cloudflare Tunnel + Workers VPC services -----------------------------

resource "cloudflare_zero_trust_tunnel_cloudflared" "pool" {
  for_each = var.vllm_pools

  account_id = var.account_id
  name       = "${var.worker_name}-${each.key}"
  config_src = "cloudflare"
}

data "cloudflare_zero_trust_tunnel_cloudflared_token" "pool" {
  for_each = var.vllm_pools

  account_id = var.account_id
  tunnel_id  = cloudflare_zero_trust_tunnel_cloudflared.pool[each.key].id
}

locals {
  # binding name => service definition plus its pool.
  vpc_services = merge([
    for p, pool in var.vllm_pools : {
      for binding, s in pool.services : binding => merge(s, { pool = p })
    }
  ]...)
}

resource "cloudflare_connectivity_directory_service" "vllm" {
  for_each = local.vpc_services

  account_id = var.account_id
  name       = "${var.worker_name}-${lower(replace(each.key, "_", "-"))}"
  type       = "http"
  http_port  = each.value.http_port
  https_port = each.value.https_port

  host = {
    ipv4     = each.value.ipv4
    hostname = each.value.hostname
    network = each.value.ipv4 == null ? null : {
      tunnel_id = cloudflare_zero_trust_tunnel_cloudflared.pool[each.value.pool].id
    }
    resolver_network = each.value.hostname == null ? null : {
      tunnel_id    = cloudflare_zero_trust_tunnel_cloudflared.pool[each.value.pool].id
      resolver_ips = each.value.resolver_ips
    }
  }
}
