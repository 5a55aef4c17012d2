output "kv_namespace_id" {
  description = "Put into wrangler.toml as the GATEWAY_KV namespace id."
  value       = module.edge.kv_namespace_id
}

output "wrangler_toml" {
  description = "The [[kv_namespaces]] and [[vpc_services]] blocks for wrangler.toml."
  value       = module.edge.wrangler_toml
}

output "tunnel_tokens" {
  description = "Run `cloudflared tunnel run --token <token>` inside the vLLM network, one per pool."
  value       = module.edge.tunnel_tokens
  sensitive   = true
}

output "gateway_url" {
  description = "Base URL of the gateway (GATEWAY_URL for gatewayctl)."
  value       = "https://${var.gateway_hostname}"
}

output "route_keys" {
  description = "Workers KV keys written for the static routes."
  value       = module.routes.keys
}
