# sendit-luigi worker and scheduler image.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY sendit_luigi sendit_luigi
COPY docker/luigi.cfg /app/luigi.cfg
ENV PYTHONPATH=/app LUIGI_CONFIG_PATH=/app/luigi.cfg
CMD ["luigi", "--module", "sendit_luigi", "ProcessAll", "--scheduler-host", "scheduler", "--workers", "2"]
