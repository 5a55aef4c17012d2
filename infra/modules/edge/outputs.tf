output "kv_namespace_id" {
  description = "Id of the Workers KV namespace: put it, once, in wrangler.toml as the GATEWAY_KV id of [env.<environment>] (`terraform output -raw kv_namespace_id`; scripts/deploy-edge.sh checks they match) and pass it to modules/routes/edge."
  value       = cloudflare_workers_kv_namespace.this.id
}

output "vpc_service_ids" {
  description = "Workers VPC service id by binding name, for [[env.<environment>.vpc_services]] in wrangler.toml (binding = the key, service_id = the value); list the bindings in GATEWAY_VIA_BINDINGS."
  value       = { for binding, s in cloudflare_connectivity_directory_service.vllm : binding => s.service_id }
}

output "tunnel_ids" {
  description = "Cloudflare Tunnel id by pool name."
  value       = { for p, t in cloudflare_zero_trust_tunnel_cloudflared.pool : p => t.id }
}

output "tunnel_tokens" {
  description = "Token by pool name for `cloudflared tunnel run --token …` on a host inside the pool's network (cloudflared 2025.7.0 or later, QUIC)."
  value       = { for p, t in data.cloudflare_zero_trust_tunnel_cloudflared_token.pool : p => t.token }
  sensitive   = true
}

output "custom_domains" {
  description = "Hostnames attached to the Worker (empty until worker_deployed = true)."
  value       = sort([for d in cloudflare_workers_custom_domain.this : d.hostname])
}

output "gateway_via_bindings" {
  description = "Value for the Worker's GATEWAY_VIA_BINDINGS var ([env.<environment>.vars] of wrangler.toml): the VPC service bindings route endpoints may name in `via` (add any mTLS certificate binding such as VLLM_MTLS yourself). The gateway refuses any other `via`."
  value       = join(",", sort(keys(cloudflare_connectivity_directory_service.vllm)))
}
