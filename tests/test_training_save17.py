"""Trainer.save of a tokenizer that writes a folder (several chat templates: additional_chat_templates/, as
transformers 4.x saves them): the second save replaces the folder of the first, as every file is replaced."""
from __future__ import annotations

import os

import minigpt2
from test_training import corpus, tiny_trainer  # noqa: F401 (corpus: a fixture)


def test_a_second_save_replaces_the_chat_template_folder_of_the_first(tmp_path, corpus):
    trainer, _ = tiny_trainer(tmp_path, corpus, max_steps=2)
    trainer.tokenizer.chat_template = {"default": "{{ messages[0]['content'] }}", "tool": "first {{ tools }}",
                                       "old": "dropped by the second save"}
    trainer.train()  # saves step 2
    folder = os.path.join(trainer.args.out_dir, "additional_chat_templates")
    assert sorted(os.listdir(folder)) == ["old.jinja", "tool.jinja"]
    trainer.tokenizer.chat_template = {"default": "{{ messages[0]['content'] }}", "tool": "second {{ tools }}"}
    trainer.train_step()
    trainer.save()  # failed: os.replace cannot rename a folder over a folder that holds files
    out = trainer.args.out_dir
    assert trainer.saved_step == 3
    assert sorted(os.listdir(folder)) == ["tool.jinja"]  # the save's folder, whole: nothing of the first left
    assert not [name for name in os.listdir(out) if name.startswith(".")], os.listdir(out)
    loaded = minigpt2.GPT2Tokenizer.from_pretrained(out)
    assert loaded.chat_template == trainer.tokenizer.chat_template
