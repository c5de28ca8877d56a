job "echo" {
  group "echo" {
    network {
      port "http" {}
    }
    task "echo" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
