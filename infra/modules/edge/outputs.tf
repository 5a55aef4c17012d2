output "kv_namespace_id" {
  description = "Id of the Workers KV namespace: put it in wrangler.toml ([[kv_namespaces]] binding GATEWAY_KV) and pass it to modules/routes/edge."
  value       = cloudflare_workers_kv_namespace.this.id
}

output "vpc_service_ids" {
  description = "Workers VPC service id by binding name, for [[vpc_services]] in wrangler.toml."
  value       = { for binding, s in cloudflare_connectivity_directory_service.vllm : binding => s.service_id }
}

output "wrangler_toml" {
  description = "The wrangler.toml blocks that bind what Terraform created: paste them over the placeholder [[kv_namespaces]] block and add the [[vpc_services]] blocks."
  value       = <<-EOT
    [[kv_namespaces]]
    binding = "GATEWAY_KV"
    id = "${cloudflare_workers_kv_namespace.this.id}"
    %{for binding, s in cloudflare_connectivity_directory_service.vllm~}

    [[vpc_services]]
    binding = "${binding}"
    service_id = "${s.service_id}"
    %{endfor~}
  EOT
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

output "managed_secret_names" {
  description = "Names of the Worker secrets Terraform puts (values are never output)."
  value       = sort(tolist(local.secret_names))
}

output "gateway_via_bindings" {
  description = "Value for the Worker's GATEWAY_VIA_BINDINGS var (in [vars] of wrangler.toml): the bindings route endpoints may name in `via`. The gateway refuses any other `via`."
  value       = join(",", sort(keys(cloudflare_connectivity_directory_service.vllm)))
}
