terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.28"
    }
  }
}

# Credentials from the usual AWS environment (AWS_PROFILE, SSO, or access keys).
provider "aws" {
  region = var.region
}
