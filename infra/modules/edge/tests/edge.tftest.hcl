# The edge module planned with a mock Cloudflare provider: no account, no API token. That it holds
# no provisioner (local-exec) and no terraform_data, so no secret passes through Terraform, is
# checked on the files themselves by infra/check/schema/check.mjs.

mock_provider "cloudflare" {
  override_during = plan

  mock_resource "cloudflare_workers_kv_namespace" {
    defaults = { id = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f" }
  }
  mock_resource "cloudflare_zero_trust_tunnel_cloudflared" {
    defaults = { id = "11111111-2222-3333-4444-555555555555" }
  }
  mock_resource "cloudflare_connectivity_directory_service" {
    defaults = { service_id = "svc-0123" }
  }
  mock_data "cloudflare_zero_trust_tunnel_cloudflared_token" {
    defaults = { token = "not-a-real-tunnel-token" }
  }
}

variables {
  account_id = "0123456789abcdef0123456789abcdef"
  zone_id    = "fedcba9876543210fedcba9876543210"
}

run "the_kv_namespace_comes_first_and_nothing_attaches_before_wrangler_deploy" {
  command = plan

  variables {
    custom_domains = ["gateway.example.com"]
    route_patterns = ["gateway.example.com/*"]
  }

  assert {
    condition     = cloudflare_workers_kv_namespace.this.title == "ai-gateway" && cloudflare_workers_kv_namespace.this.account_id == var.account_id
    error_message = "The GATEWAY_KV namespace, in the account, titled like the Worker."
  }

  assert {
    condition     = output.kv_namespace_id == "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"
    error_message = "kv_namespace_id is the namespace's id (for wrangler.toml and modules/routes/edge)."
  }

  assert {
    condition     = length(cloudflare_workers_custom_domain.this) == 0 && length(cloudflare_workers_route.this) == 0 && length(output.custom_domains) == 0
    error_message = "Domains and routes attach to an existing script: none while worker_deployed = false."
  }
}

run "custom_domains_and_routes_attach_to_the_worker" {
  command = plan

  variables {
    worker_deployed = true
    worker_name     = "ai-gateway-staging"
    custom_domains  = ["gateway.example.com", "llama.models.example.com"]
    route_patterns  = ["legacy.example.com/*"]
  }

  assert {
    condition     = toset(keys(cloudflare_workers_custom_domain.this)) == toset(["gateway.example.com", "llama.models.example.com"])
    error_message = "One custom domain per hostname."
  }

  assert {
    condition     = alltrue([for d in cloudflare_workers_custom_domain.this : d.service == "ai-gateway-staging" && d.zone_id == var.zone_id && d.account_id == var.account_id])
    error_message = "Each custom domain serves the Worker named in wrangler.toml, in the zone."
  }

  assert {
    condition     = cloudflare_workers_route.this["legacy.example.com/*"].script == "ai-gateway-staging"
    error_message = "Workers routes name the Worker's script."
  }

  assert {
    condition     = join(",", output.custom_domains) == "gateway.example.com,llama.models.example.com"
    error_message = "custom_domains lists the attached hostnames, sorted."
  }
}

run "a_vllm_pool_becomes_a_tunnel_and_one_vpc_service_per_host" {
  command = plan

  variables {
    vllm_pools = {
      llama = {
        services = {
          VLLM_LLAMA_A = { ipv4 = "10.0.1.5" }
          VLLM_LLAMA_B = { hostname = "vllm-b.internal", resolver_ips = ["10.0.0.2"], https_port = 8443 }
        }
      }
    }
  }

  assert {
    condition     = cloudflare_zero_trust_tunnel_cloudflared.pool["llama"].name == "ai-gateway-llama" && cloudflare_zero_trust_tunnel_cloudflared.pool["llama"].config_src == "cloudflare"
    error_message = "A remotely managed tunnel per pool."
  }

  assert {
    condition     = cloudflare_connectivity_directory_service.vllm["VLLM_LLAMA_A"].host.ipv4 == "10.0.1.5" && cloudflare_connectivity_directory_service.vllm["VLLM_LLAMA_A"].host.network.tunnel_id == "11111111-2222-3333-4444-555555555555" && cloudflare_connectivity_directory_service.vllm["VLLM_LLAMA_A"].http_port == 8000
    error_message = "An IPv4 host is reached through its pool's tunnel, on 8000 by default."
  }

  assert {
    condition     = cloudflare_connectivity_directory_service.vllm["VLLM_LLAMA_B"].host.hostname == "vllm-b.internal" && cloudflare_connectivity_directory_service.vllm["VLLM_LLAMA_B"].host.resolver_network.resolver_ips[0] == "10.0.0.2" && cloudflare_connectivity_directory_service.vllm["VLLM_LLAMA_B"].https_port == 8443
    error_message = "A hostname is resolved inside the pool's network."
  }

  assert {
    condition     = cloudflare_connectivity_directory_service.vllm["VLLM_LLAMA_A"].name == "ai-gateway-vllm-llama-a" && cloudflare_connectivity_directory_service.vllm["VLLM_LLAMA_A"].type == "http"
    error_message = "VPC services are named after the Worker and the binding."
  }

  assert {
    condition     = output.gateway_via_bindings == "VLLM_LLAMA_A,VLLM_LLAMA_B" && toset(keys(output.vpc_service_ids)) == toset(["VLLM_LLAMA_A", "VLLM_LLAMA_B"]) && output.vpc_service_ids["VLLM_LLAMA_A"] == "svc-0123"
    error_message = "GATEWAY_VIA_BINDINGS lists the bindings; vpc_service_ids maps them to service ids."
  }
}

run "refuses_an_account_id_that_is_not_one" {
  command = plan

  variables {
    account_id = "acme"
  }

  expect_failures = [var.account_id]
}

run "refuses_an_uppercase_custom_domain" {
  command = plan

  variables {
    custom_domains = ["Gateway.example.com"]
  }

  expect_failures = [var.custom_domains]
}

run "refuses_a_binding_in_two_pools" {
  command = plan

  variables {
    vllm_pools = {
      a = { services = { X = { ipv4 = "10.0.0.1" } } }
      b = { services = { X = { ipv4 = "10.0.0.2" } } }
    }
  }

  expect_failures = [var.vllm_pools]
}

run "refuses_a_service_with_both_ipv4_and_hostname" {
  command = plan

  variables {
    vllm_pools = { a = { services = { X = { ipv4 = "10.0.0.1", hostname = "h.internal" } } } }
  }

  expect_failures = [var.vllm_pools]
}

run "refuses_a_binding_name_wrangler_cannot_bind" {
  command = plan

  variables {
    vllm_pools = { a = { services = { "bad-binding" = { ipv4 = "10.0.0.1" } } } }
  }

  expect_failures = [var.vllm_pools]
}
