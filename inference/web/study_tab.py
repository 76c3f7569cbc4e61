"""The user study as a tab: two images of the same prompt and seed, and a vote for one of them."""
from __future__ import annotations

import uuid

import gradio as gr

from inference.web.study import Study
from inference.web.tabs import ui_errors


def study_tab(study: Study, blocks: gr.Blocks) -> None:
    """A tab that shows trial after trial; each vote is stored before the next pair appears."""
    with gr.Tab("Study", id="study", elem_id="tab-study"):
        gr.Markdown("Which image is better? The two come from different models or settings, "
                    "with the same prompt and seed; their sides are drawn at random.")
        session = gr.State("")
        position = gr.State(0)
        case = gr.Markdown(elem_id="study-case")
        with gr.Row():
            left = gr.Image(label="Left", format="png", type="pil", interactive=False, elem_id="study-left")
            right = gr.Image(label="Right", format="png", type="pil", interactive=False, elem_id="study-right")
        with gr.Row():
            vote_left = gr.Button("Left is better", elem_id="study-vote-left")
            vote_tie = gr.Button("About the same", elem_id="study-vote-tie")
            vote_right = gr.Button("Right is better", elem_id="study-vote-right")
        tally = gr.Markdown(elem_id="study-tally")

        def tally_text() -> str:
            return f"{study.count()} votes recorded in this study"

        @ui_errors
        def show(sess: str, pos: int):
            sess = sess or uuid.uuid4().hex
            trial = study.trial(sess, pos)
            a, b = study.images(trial)
            what = f"prompt **{trial.prompt}**, " if trial.prompt else ""
            return sess, pos, f"Trial {pos + 1}: {what}seed {trial.seed}", a, b, tally_text()

        outputs = [session, position, case, left, right, tally]

        def voter(choice: str):
            @ui_errors
            def vote(sess: str, pos: int):
                if not sess:
                    raise gr.Error("the pair is still loading: vote when both images show")
                study.vote(study.trial(sess, pos), choice, sess)
                return show(sess, pos + 1)

            return vote

        for button, choice in ((vote_left, "left"), (vote_right, "right"), (vote_tie, "tie")):
            button.click(voter(choice), [session, position], outputs)
        blocks.load(show, [session, position], outputs)  # the first pair, when the page opens
