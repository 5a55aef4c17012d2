terraform {
  # Write-only secret values and ephemeral variables (modules/lambda).
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.28"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
  }
}

# Credentials from the usual AWS environment (AWS_PROFILE, SSO, or access keys).
provider "aws" {
  region = var.region
}

# CloudFront takes certificates from us-east-1 only: the front door's certificate is made there.
provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"
}
