package extract

func htmlText(data []byte) Result { return plainText(data) }
