zxuabcd
JyQ12345678
kjzHRms