pool "web" {
  template = "echo.nomad.hcl"
}
