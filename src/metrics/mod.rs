//! Caption metrics compatible with coco-caption (pycocoevalcap): BLEU, ROUGE-L, CIDEr-D.
