# An optional front door: CloudFront in front of the Function URL, on your own hostnames, with
# HTTPS only, an optional WAF web ACL, no caching, and Route 53 alias records.
#
# CloudFront sends the Function URL's own host as Host (Lambda needs it), so a viewer-request
# CloudFront Function copies the viewer's Host into x-forwarded-host, overwriting anything the
# client sent, and every request to the origin carries x-origin-verify = the origin secret. The
# gateway trusts x-forwarded-host (host routes, GATEWAY_ADMIN_HOST) only when x-origin-verify
# equals GATEWAY_ORIGIN_SECRET (compared in constant time) and answers 403 to any request without
# it, so the bare Function URL is useless.
#
# origin_auth:
#   "secret_header" (default): the URL keeps authorization NONE; the origin secret is the lock.
#   "oac": the URL takes AWS_IAM and CloudFront signs each request (origin access control), so the
#          URL cannot be called at all except through this distribution. Two costs: AWS requires
#          the viewer to send x-amz-content-sha256 (the SHA-256 of the body) with every POST and
#          PUT, because Lambda does not accept unsigned payloads (OpenAI SDKs and curl do not, so
#          chat completions fail); and signing "always" puts CloudFront's SigV4 signature in the
#          Authorization header, replacing the viewer's (CloudFront's OAC documentation), so the
#          gateway's bearer token does not arrive there. Use it only for clients you control and
#          that can carry both. The origin secret is sent too.
#
# The certificate: ACM, in us-east-1 (CloudFront's requirement), covering every domain name. This
# module takes its ARN rather than creating it, so that it needs no second (us-east-1) provider
# configuration from every caller; examples/lambda shows the certificate with DNS validation.

locals {
  front_door = var.front_door != null
  oac        = local.front_door ? var.front_door.origin_auth == "oac" : false

  # The origin secret: given, or generated once and kept (it is in CloudFront's configuration).
  origin_secret = local.front_door ? (var.origin_secret != null ? var.origin_secret : random_password.origin[0].result) : null

  # "https://<id>.lambda-url.<region>.on.aws/" -> "<id>.lambda-url.<region>.on.aws"
  function_url_host = split("/", aws_lambda_function_url.this.function_url)[2]

  alias_records = local.front_door && try(var.front_door.route53_zone_id, null) != null ? {
    for pair in setproduct(var.front_door.domain_names, ["A", "AAAA"]) : "${pair[0]} ${pair[1]}" => { name = pair[0], type = pair[1] }
  } : {}
}

resource "random_password" "origin" {
  count   = local.front_door && var.origin_secret == null ? 1 : 0
  length  = 48
  special = false
}

data "aws_cloudfront_cache_policy" "disabled" {
  count = local.front_door ? 1 : 0
  name  = "Managed-CachingDisabled"
}

# Every viewer header (Authorization, x-session-id, cookies, x-forwarded-host set below) and the
# query string, but not Host: the Function URL answers only to its own.
data "aws_cloudfront_origin_request_policy" "all_viewer_except_host" {
  count = local.front_door ? 1 : 0
  name  = "Managed-AllViewerExceptHostHeader"
}

resource "aws_cloudfront_function" "forwarded_host" {
  count   = local.front_door ? 1 : 0
  name    = "${var.name}-forwarded-host"
  runtime = "cloudfront-js-2.0"
  comment = "Copy the viewer's Host into x-forwarded-host (overwriting any client value)"
  publish = true
  code    = <<-EOT
    function handler(event) {
      var request = event.request;
      var host = request.headers.host;
      if (host && host.value) {
        request.headers['x-forwarded-host'] = { value: host.value };
      } else {
        delete request.headers['x-forwarded-host'];
      }
      return request;
    }
  EOT
}

resource "aws_cloudfront_origin_access_control" "this" {
  count                             = local.oac ? 1 : 0
  name                              = "${var.name}-function-url"
  description                       = "AI gateway ${var.name}: sign requests to the Function URL"
  origin_access_control_origin_type = "lambda"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_cloudfront_distribution" "this" {
  count           = local.front_door ? 1 : 0
  enabled         = true
  comment         = "AI gateway ${var.name}"
  aliases         = var.front_door.domain_names
  is_ipv6_enabled = true
  http_version    = "http2and3"
  price_class     = var.front_door.price_class
  web_acl_id      = var.front_door.web_acl_id

  origin {
    origin_id                = "function-url"
    domain_name              = local.function_url_host
    origin_access_control_id = local.oac ? aws_cloudfront_origin_access_control.this[0].id : null

    custom_origin_config {
      http_port              = 80
      https_port             = 443
      origin_protocol_policy = "https-only"
      origin_ssl_protocols   = ["TLSv1.2"]
      # Idle time between two bytes of the answer, not its total time: a stream may last longer,
      # but a pause longer than this cuts it. Keep it >= every route's timeouts.idle_ms.
      origin_read_timeout      = var.front_door.origin_read_timeout
      origin_keepalive_timeout = var.front_door.origin_keepalive_timeout
    }

    custom_header {
      name  = "x-origin-verify"
      value = local.origin_secret
    }
  }

  default_cache_behavior {
    target_origin_id         = "function-url"
    viewer_protocol_policy   = var.front_door.viewer_protocol_policy
    allowed_methods          = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
    cached_methods           = ["GET", "HEAD"]
    cache_policy_id          = data.aws_cloudfront_cache_policy.disabled[0].id
    origin_request_policy_id = data.aws_cloudfront_origin_request_policy.all_viewer_except_host[0].id
    # Nothing to compress or cache: streamed answers pass through as they come.
    compress = false

    function_association {
      event_type   = "viewer-request"
      function_arn = aws_cloudfront_function.forwarded_host[0].arn
    }
  }

  viewer_certificate {
    acm_certificate_arn      = var.front_door.certificate_arn
    ssl_support_method       = "sni-only"
    minimum_protocol_version = "TLSv1.2_2021"
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  tags = var.tags
}

# With OAC only this distribution may invoke the function, through its URL (both permissions are
# needed for function URLs created since October 2025).
resource "aws_lambda_permission" "cloudfront_url" {
  count                  = local.oac ? 1 : 0
  statement_id           = "AllowCloudFrontFunctionUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.this.function_name
  principal              = "cloudfront.amazonaws.com"
  source_arn             = aws_cloudfront_distribution.this[0].arn
  function_url_auth_type = "AWS_IAM"
}

resource "aws_lambda_permission" "cloudfront_invoke" {
  count                    = local.oac ? 1 : 0
  statement_id             = "AllowCloudFrontInvokeViaFunctionUrl"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.this.function_name
  principal                = "cloudfront.amazonaws.com"
  source_arn               = aws_cloudfront_distribution.this[0].arn
  invoked_via_function_url = true
}

resource "aws_route53_record" "front_door" {
  for_each = local.alias_records

  zone_id = var.front_door.route53_zone_id
  name    = each.value.name
  type    = each.value.type

  alias {
    name                   = aws_cloudfront_distribution.this[0].domain_name
    zone_id                = aws_cloudfront_distribution.this[0].hosted_zone_id
    evaluate_target_health = false
  }
}
