terraform {
  required_version = ">= 1.5.0"

  required_providers {
    cloudflare = {
      source = "cloudflare/cloudflare"
      # v5: cloudflare_workers_kv takes key_name; 5.16 fixed keys with special characters (`:`).
      version = "~> 5.16"
    }
  }
}
