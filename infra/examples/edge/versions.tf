terraform {
  required_version = ">= 1.5.0"

  required_providers {
    cloudflare = {
      source  = "cloudflare/cloudflare"
      version = "~> 5.16"
    }
  }
}

# Credentials: export CLOUDFLARE_API_TOKEN (Workers Scripts, Workers KV Storage, Workers Routes,
# Cloudflare Tunnel and Connectivity Directory Admin permissions). wrangler reads the same variable.
provider "cloudflare" {}
