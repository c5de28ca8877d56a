pool "scaled" {
  template = "echo.nomad.hcl"

  port "http" {
    number = 8080
  }

  scaler {
    script = "bad.star"
  }
}
