from services.ingestion.service import main

main()
