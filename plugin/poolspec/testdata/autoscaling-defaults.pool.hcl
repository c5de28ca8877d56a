# An empty autoscaling block takes every key from the defaults; min_scale
# raises activation_scale with it.
pool "web" {
  template = "echo.nomad.hcl"

  port "http" {
    number = 8080
  }

  autoscaling {
    min_scale = 3
  }
}
