"""Importers: gameplay logs (video + controller CSV) and RLDS robot episodes (TFRecord)."""
