"""Importers: gameplay logs (video + controller CSV), RLDS episodes (TFRecord), LeRobot datasets."""
