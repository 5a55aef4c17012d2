output "kv_namespace_id" {
  description = "Put it, once, into wrangler.toml as the GATEWAY_KV id of [env.<environment>] (scripts/deploy-edge.sh checks it with GATEWAY_TF_DIR)."
  value       = module.edge.kv_namespace_id
}

output "worker_name" {
  description = "The Worker this state attaches to: ai-gateway-<environment>."
  value       = "ai-gateway-${var.environment}"
}

output "vpc_service_ids" {
  description = "VPC service id by binding name, for vpc_services of [env.<environment>] in wrangler.toml."
  value       = module.edge.vpc_service_ids
}

output "gateway_via_bindings" {
  description = "GATEWAY_VIA_BINDINGS for [env.<environment>.vars] in wrangler.toml."
  value       = module.edge.gateway_via_bindings
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

output "routes" {
  description = "The route objects as stored (a plan shows their changes field by field)."
  value       = module.routes.routes
}
