terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.28 added aws_lambda_permission.invoked_via_function_url (function URLs created since
      # October 2025 need lambda:InvokeFunction as well as lambda:InvokeFunctionUrl).
      version = "~> 6.28"
    }
  }
}
