# The Cloudflare side of the gateway. Ownership, so that `wrangler deploy` and Terraform never fight:
#
#   wrangler deploy (wrangler.toml)        Terraform (this module)
#   - the Worker script and its build      - the Workers KV namespace (its id goes into wrangler.toml)
#   - bindings: GATEWAY_KV, the            - custom domains / Workers routes
#     GatewayState Durable Object          - Worker secrets (signing keys, upstream API keys)
#     (GATEWAY_STATE), vpc_services, vars  - tunnels and Workers VPC services for private vLLM pools
#   - Durable Object migrations            - static routes in KV (modules/routes/edge)

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

# ---- secrets --------------------------------------------------------------------------------------
# Provider v5's cloudflare_workers_secret only serves Workers for Platforms dispatch namespaces, and
# cloudflare_workers_script would take the script away from wrangler. So Terraform puts each secret
# with `wrangler secret put` (value on stdin, never on a command line) and deletes it on destroy.
# A changed value changes the hash below and re-puts the secret.

locals {
  secret_names = nonsensitive(toset(concat(
    var.signing_keys == null ? [] : ["GATEWAY_SIGNING_KEYS"],
    keys(var.upstream_api_keys),
  )))
}

resource "terraform_data" "worker_secret" {
  for_each = var.worker_deployed ? local.secret_names : toset([])

  triggers_replace = [sha256(each.key == "GATEWAY_SIGNING_KEYS" ? var.signing_keys : var.upstream_api_keys[each.key])]

  input = {
    name        = each.key
    worker      = var.worker_name
    account_id  = var.account_id
    wrangler    = var.wrangler_command
    working_dir = var.wrangler_working_dir
  }

  provisioner "local-exec" {
    working_dir = self.input.working_dir
    command     = "printf '%s' \"$SECRET_VALUE\" | ${self.input.wrangler} secret put ${self.input.name} --name ${self.input.worker}"
    environment = {
      CLOUDFLARE_ACCOUNT_ID = self.input.account_id
      SECRET_VALUE          = each.key == "GATEWAY_SIGNING_KEYS" ? var.signing_keys : var.upstream_api_keys[each.key]
    }
  }

  provisioner "local-exec" {
    when        = destroy
    working_dir = self.input.working_dir
    command     = "${self.input.wrangler} secret delete ${self.input.name} --name ${self.input.worker}"
    environment = {
      CLOUDFLARE_ACCOUNT_ID = self.input.account_id
    }
  }
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
