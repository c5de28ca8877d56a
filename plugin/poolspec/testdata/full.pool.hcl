pool "search-api" {
  template      = "echo.nomad.hcl"
  desired_count = 3
  active        = true

  port "http" {
    number   = 8080
    protocol = "http"
    public   = true
  }

  port "admin" {
    number   = 9090
    protocol = "tcp"
  }

  methods {
    names = ["search.query", "search.index"]
    port  = "http"
    path  = "/rpc"
  }

  drain {
    timeout      = "20s"
    grace_period = "1m"
  }

  autoscaling {
    metric                     = "rps"
    target                     = 10
    target_utilization         = 70
    container_concurrency      = 5
    min_scale                  = 1
    max_scale                  = 10
    initial_scale              = 2
    activation_scale           = 2
    scale_down_delay           = "30s"
    stable_window              = "60s"
    panic_window_percentage    = 10
    panic_threshold_percentage = 200
    queue_timeout              = "45s"
  }
}
