output "ingest_url" {
  value = google_cloud_run_v2_service.ingest.uri
}

output "bucket" {
  value = google_storage_bucket.files.name
}

output "sql_connection_name" {
  value = google_sql_database_instance.main.connection_name
}
