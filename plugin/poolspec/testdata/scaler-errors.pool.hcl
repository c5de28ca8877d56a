pool "scaled" {
  template = "echo.nomad.hcl"

  port "http" {
    number = 8080
  }

  autoscaling {
    target = 10
  }

  scaler {
    script   = "missing.star"
    interval = "500ms"
  }
}
