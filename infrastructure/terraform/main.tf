# comfy-cloud on GCP: ingest and dispatcher on Cloud Run, inference (ComfyUI + worker per GPU) on GKE,
# state in Cloud SQL for PostgreSQL, files in a GCS bucket, secrets in Secret Manager.

locals {
  services = ["run.googleapis.com", "sqladmin.googleapis.com", "secretmanager.googleapis.com",
  "container.googleapis.com", "iamcredentials.googleapis.com", "storage.googleapis.com"]
}

resource "google_project_service" "apis" {
  for_each           = toset(local.services)
  service            = each.value
  disable_on_destroy = false
}

# --- Identity -------------------------------------------------------------------------------------

resource "google_service_account" "comfy" {
  account_id   = "comfy-cloud"
  display_name = "comfy-cloud services"
}

# Signing V4 URLs for /api/view without a key file: the service account signs through IAM signBlob.
resource "google_service_account_iam_member" "self_sign" {
  service_account_id = google_service_account.comfy.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.comfy.email}"
}

resource "google_project_iam_member" "sql_client" {
  project = var.project
  role    = "roles/cloudsql.client"
  member  = "serviceAccount:${google_service_account.comfy.email}"
}

# GKE pods of the `comfy-cloud` Kubernetes service account act as this service account.
resource "google_service_account_iam_member" "workload_identity" {
  service_account_id = google_service_account.comfy.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project}.svc.id.goog[default/comfy-cloud]"
  depends_on         = [google_container_cluster.inference]
}

# --- Storage --------------------------------------------------------------------------------------

resource "google_storage_bucket" "files" {
  name                        = "${var.project}-comfy-cloud"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  lifecycle_rule {
    condition { matches_prefix = ["comfy-cloud/tmp/"], age = 1 }
    action { type = "Delete" }
  }
}

resource "google_storage_bucket_iam_member" "files_rw" {
  bucket = google_storage_bucket.files.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.comfy.email}"
}

# --- Database -------------------------------------------------------------------------------------

resource "google_sql_database_instance" "main" {
  name                = "comfy-cloud"
  database_version    = "POSTGRES_16"
  region              = var.region
  deletion_protection = true
  settings {
    tier              = var.db_tier
    availability_type = "REGIONAL"
    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
    }
    database_flags {
      name  = "max_connections"
      value = "400"
    }
  }
  depends_on = [google_project_service.apis]
}

resource "google_sql_database" "comfy" {
  name     = "comfy"
  instance = google_sql_database_instance.main.name
}

resource "random_password" "db" {
  length  = 32
  special = false
}

resource "google_sql_user" "comfy" {
  name     = "comfy"
  instance = google_sql_database_instance.main.name
  password = random_password.db.result
}

# --- Secrets --------------------------------------------------------------------------------------

resource "random_password" "secret_key" {
  length  = 48
  special = false
}

resource "google_secret_manager_secret" "database_url" {
  secret_id = "comfy-cloud-database-url"
  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "database_url" {
  secret = google_secret_manager_secret.database_url.id
  # Cloud Run reaches Cloud SQL through the unix socket the platform mounts under /cloudsql.
  secret_data = "postgresql://comfy:${random_password.db.result}@/comfy?host=/cloudsql/${google_sql_database_instance.main.connection_name}"
}

resource "google_secret_manager_secret" "secret_key" {
  secret_id = "comfy-cloud-secret-key"
  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "secret_key" {
  secret      = google_secret_manager_secret.secret_key.id
  secret_data = random_password.secret_key.result
}

resource "google_secret_manager_secret_iam_member" "readable" {
  for_each  = { db = google_secret_manager_secret.database_url.id, key = google_secret_manager_secret.secret_key.id }
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.comfy.email}"
}
