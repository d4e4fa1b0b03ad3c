# ingest and dispatcher on Cloud Run. Migrations run as a Cloud Run job before a rollout.

locals {
  common_env = {
    STORAGE_URL = "gs://${google_storage_bucket.files.name}/comfy-cloud"
    LOG_FORMAT  = "json"
    HOST        = "0.0.0.0"
  }
}

resource "google_cloud_run_v2_job" "migrate" {
  name     = "comfy-cloud-migrate"
  location = var.region
  template {
    template {
      service_account = google_service_account.comfy.email
      containers {
        image = var.image
        args  = ["migrate"]
        env {
          name = "DATABASE_URL"
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.database_url.secret_id
              version = "latest"
            }
          }
        }
        volume_mounts {
          name       = "cloudsql"
          mount_path = "/cloudsql"
        }
      }
      volumes {
        name = "cloudsql"
        cloud_sql_instance { instances = [google_sql_database_instance.main.connection_name] }
      }
    }
  }
}

resource "google_cloud_run_v2_service" "dispatcher" {
  name     = "comfy-cloud-dispatcher"
  location = var.region
  ingress  = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  template {
    service_account = google_service_account.comfy.email
    # The background scheduling loop must keep running between requests.
    scaling {
      min_instance_count = 1
      max_instance_count = 3
    }
    containers {
      image = var.image
      args  = ["serve", "dispatcher"]
      ports { container_port = 8080 }
      resources {
        cpu_idle = false
        limits   = { cpu = "1", memory = "512Mi" }
      }
      dynamic "env" {
        for_each = local.common_env
        content {
          name  = env.key
          value = env.value
        }
      }
      env {
        name = "DATABASE_URL"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.database_url.secret_id
            version = "latest"
          }
        }
      }
      startup_probe {
        http_get { path = "/ready" }
      }
      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }
    }
    volumes {
      name = "cloudsql"
      cloud_sql_instance { instances = [google_sql_database_instance.main.connection_name] }
    }
  }
}

resource "google_cloud_run_v2_service" "ingest" {
  name     = "comfy-cloud-ingest"
  location = var.region
  template {
    service_account = google_service_account.comfy.email
    # WebSockets: long request timeout; session affinity keeps a browser on one replica.
    timeout          = "3600s"
    session_affinity = true
    scaling {
      min_instance_count = 1
      max_instance_count = 10
    }
    containers {
      image = var.image
      args  = ["serve", "ingest"]
      ports { container_port = 8080 }
      resources {
        cpu_idle = false
        limits   = { cpu = "2", memory = "1Gi" }
      }
      dynamic "env" {
        for_each = merge(local.common_env, { DISPATCHER_URL = google_cloud_run_v2_service.dispatcher.uri })
        content {
          name  = env.key
          value = env.value
        }
      }
      env {
        name = "DATABASE_URL"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.database_url.secret_id
            version = "latest"
          }
        }
      }
      env {
        name = "SECRET_KEY"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.secret_key.secret_id
            version = "latest"
          }
        }
      }
      env {
        name  = "FIREBASE_PROJECT_ID"
        value = var.project
      }
      startup_probe {
        http_get { path = "/ready" }
      }
      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }
    }
    volumes {
      name = "cloudsql"
      cloud_sql_instance { instances = [google_sql_database_instance.main.connection_name] }
    }
  }
}

resource "google_cloud_run_v2_service_iam_member" "ingest_public" {
  count    = var.ingest_public ? 1 : 0
  name     = google_cloud_run_v2_service.ingest.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "allUsers"
}
