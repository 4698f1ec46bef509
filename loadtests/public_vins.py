"""Public example VINs shared by the benchmarks and the locust file.

Each comes from a public source listed in ../shared/data/vins-dev.json or tests/vin (Wikipedia,
NHTSA vPIC responses, and the test suites of open VIN decoders).
"""

PUBLIC_VINS = [
    "1HGCM82633A004352",
    "JH4DC4340RS003205",
    "WVWZZZ1KZ6W612305",
    "1FTMW1T88MFA00001",
    "KM8K2CAB4PU001140",
    "YV1902FH5D1796335",
    "JT2AE09W4P0038539",
    "1C6RR7LT2JS179571",
    "KNDJT2A54D7883468",
    "SCBEC9ZA1EC225243",
    "XTAGFK330JY144213",
    "LFWADRJF011002346",
    "WP0ZZZ99ZTS392124",
]
