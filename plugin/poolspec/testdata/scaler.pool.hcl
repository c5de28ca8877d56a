pool "scaled" {
  template = "echo.nomad.hcl"

  port "http" {
    number = 8080
  }

  scaler {
    script   = "scale.star"
    interval = "30s"
  }
}
