pool "Web--API" {
  template      = "echo.nomad.hcl"
  desired_count = -1

  port "http" {
    number   = 8080
    protocol = "udp"
  }

  port "http" {
    number = 8080
  }

  methods {
    names = ["ok", "rpc.discover"]
    port  = "grpc"
    path  = "rpc"
  }

  drain {
    timeout = "15 seconds"
  }

  autoscaling {
    min_scale                  = 5
    max_scale                  = 3
    stable_window              = "3s"
    panic_threshold_percentage = 100
  }
}
