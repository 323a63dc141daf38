"""Model monitoring: what each serving model sees (app/monitoring/monitor.py), its Prometheus
exposition (exposition.py) and the drift reports' schedule (schedule.py). docs/monitoring.md."""
