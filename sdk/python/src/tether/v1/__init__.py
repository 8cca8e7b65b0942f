"""Generated from proto/tether/v1/api.proto by sdk/generate: do not edit."""
