print("warrenctl")
