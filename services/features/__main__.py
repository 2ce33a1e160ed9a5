from services.features.service import main

main()
