terraform {
  # optional() attribute defaults need 1.3, startswith() needs 1.5. This module has no
  # provider: it renders the store entries; ./edge and ./lambda write them.
  required_version = ">= 1.5.0"
}
