terraform {
  required_version = ">= 1.5.0"

  required_providers {
    cloudflare = {
      source = "cloudflare/cloudflare"
      # v5 resource names (cloudflare_workers_kv with key_name, cloudflare_zero_trust_tunnel_cloudflared,
      # cloudflare_connectivity_directory_service for Workers VPC services).
      version = "~> 5.16"
    }
  }
}
