# Runs Tidepool's gateways on Nomad as a system job: one per client node.
#
#   nomad job run -var tidepool_bin=/usr/local/bin/tidepool jobspecs/tidepool-gateway.nomad.hcl

variable "tidepool_bin" {
  type        = string
  description = "Absolute path of the tidepool binary on every client node."
}

variable "consul_addr" {
  type    = string
  default = "127.0.0.1:8500"
}

variable "domain" {
  type    = string
  default = "localhost"
}

job "tidepool-gateway" {
  type        = "system"
  datacenters = ["*"]

  group "gateway" {
    network {
      port "http" {}
    }

    # The gateway registers itself as tidepool-gateway (with its own check),
    # so the leader can read its stats; Nomad only runs it.
    task "gateway" {
      driver = "raw_exec"

      config {
        command = var.tidepool_bin
        args    = ["gateway", "-http-addr", "${NOMAD_ADDR_http}", "-name", "${node.unique.name}", "-domain", var.domain]
      }

      env {
        CONSUL_HTTP_ADDR = var.consul_addr
      }

      # Let in-flight requests finish.
      kill_signal  = "SIGTERM"
      kill_timeout = "35s"

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
