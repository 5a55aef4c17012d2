terraform {
  # 1.11: write-only arguments (secret_string_wo), so secret values reach Secrets Manager without
  # being stored in the plan or the state; ephemeral input variables (1.10) for those values.
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.28 added aws_lambda_permission.invoked_via_function_url (function URLs created since
      # October 2025 need lambda:InvokeFunction as well as lambda:InvokeFunctionUrl).
      version = "~> 6.28"
    }
    random = {
      source = "hashicorp/random"
      # random_password for the front door's origin secret.
      version = "~> 3.7"
    }
  }
}
