
6
m1
a:,
type.googleapis.com/point.Array	

2x