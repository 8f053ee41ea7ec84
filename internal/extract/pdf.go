package extract

import "errors"

func pdfText(data []byte) (Result, error) { return Result{}, errors.New("pdf: not yet") }
